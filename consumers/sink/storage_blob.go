package sink

import (
	"context"
	"fmt"
)

func openBlobStorage(_ context.Context, url string) (Storage, error) {
	return nil, fmt.Errorf("sink output %s: object stores are not built in", url)
}

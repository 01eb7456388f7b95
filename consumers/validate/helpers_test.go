package validate

import "github.com/valyala/fastjson"

func idOf(line []byte) string {
	return string(fastjson.GetBytes(line, "id"))
}

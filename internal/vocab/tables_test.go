package vocab

import (
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTablesMatchCDM holds Tables to OHDSI's field-level CSV of CDM v5.4 (the DDL's
// source): every vocabulary table, its columns in order, their types, lengths and
// whether they are required. It skips when the reference is absent.
func TestTablesMatchCDM(t *testing.T) {
	path := filepath.Join("..", "..", "..", "shared", "reference", "omop-cdm-5.4", "OMOP_CDMv5.4_Field_Level.csv")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("OMOP CDM reference not found at " + path)
	}
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(raw), "\ufeff"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := map[string]int{}
	for i, h := range recs[0] {
		head[h] = i
	}
	varchar := regexp.MustCompile(`^varchar\((\d+)\)$`)
	want := map[string][]TableColumn{}
	for _, r := range recs[1:] {
		table := strings.ToLower(r[head["cdmTableName"]])
		c := TableColumn{Name: r[head["cdmFieldName"]], Required: r[head["isRequired"]] == "Yes"}
		switch dt := strings.ToLower(r[head["cdmDatatype"]]); {
		case dt == "integer":
			c.Type = Integer
		case dt == "float":
			c.Type = Float
		case dt == "date":
			c.Type = Date
		case varchar.MatchString(dt):
			c.Type = Varchar
			c.MaxLength, _ = strconv.Atoi(varchar.FindStringSubmatch(dt)[1])
		default:
			continue // not a type vocabulary tables use
		}
		want[table] = append(want[table], c)
	}
	if len(Tables) != 9 {
		t.Errorf("%d vocabulary tables, Athena ships 9", len(Tables))
	}
	for _, d := range Tables {
		if !reflect.DeepEqual(d.Columns, want[d.Name]) {
			t.Errorf("%s:\n got  %v\n want %v", d.Name, d.Columns, want[d.Name])
		}
	}
}

func TestStreamTable(t *testing.T) {
	d, _ := Table("drug_strength")
	// Columns in another order than the DDL's, one nullable column missing (box_size), a
	// quoted field, an ISO date, CRLF line ends, and an extra column that is ignored.
	in := "ingredient_concept_id\tdrug_concept_id\tamount_value\tamount_unit_concept_id\tnumerator_value\tnumerator_unit_concept_id\tdenominator_value\tdenominator_unit_concept_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\textra\r\n" +
		"1332418\t1332419\t5\t8576\t\t\t\t\t19700101\t2099-12-31\t\tx\r\n" +
		"\"1112807\"\t19059056\t\t\t81\t8576\t1\t8587\t20050101\t20991231\tD\t\r\n"
	var got []Row
	n, err := d.StreamTable(strings.NewReader(in), func(r Row) error {
		got = append(got, append(Row(nil), r...))
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("read %d rows, err %v", n, err)
	}
	day := func(y int, m time.Month, dd int) time.Time { return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC) }
	want := []Row{
		{int64(1332419), int64(1332418), 5.0, int64(8576), nil, nil, nil, nil, nil, day(1970, 1, 1), day(2099, 12, 31), nil},
		{int64(19059056), int64(1112807), nil, nil, 81.0, int64(8576), 1.0, int64(8587), nil, day(2005, 1, 1), day(2099, 12, 31), "D"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows\n got  %v\n want %v", got, want)
	}

	c, _ := Table("concept")
	for name, bad := range map[string]string{
		"missing required column": "concept_id\tconcept_name\n1\tx\n",
		"not an integer":          header(c) + "x1\tn\tDrug\tRxNorm\tIngredient\tS\t1\t19700101\t20991231\t\n",
		"empty required date":     header(c) + "1\tn\tDrug\tRxNorm\tIngredient\tS\t1\t\t20991231\t\n",
		"bad date":                header(c) + "1\tn\tDrug\tRxNorm\tIngredient\tS\t1\t1970-13-01\t20991231\t\n",
	} {
		if _, err := c.StreamTable(strings.NewReader(bad), func(Row) error { return nil }); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "missing required column" && !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: error %q does not name the line", name, err)
		}
	}
}

func header(d *TableDef) string {
	names := make([]string, len(d.Columns))
	for i, c := range d.Columns {
		names[i] = c.Name
	}
	return strings.Join(names, "\t") + "\n"
}

// TestStreamTestVocabulary streams every table of the mapper's test vocabulary (the
// hand-made Athena subset in consumers/omop/testdata/vocab): all nine are there and parse.
func TestStreamTestVocabulary(t *testing.T) {
	dir := filepath.Join("..", "..", "consumers", "omop", "testdata", "vocab")
	for _, d := range Tables {
		n, ok, err := d.StreamFile(dir, func(Row) error { return nil })
		if err != nil || !ok || n == 0 {
			t.Errorf("%s: %d rows, present %v, err %v", d.Name, n, ok, err)
		}
	}
}

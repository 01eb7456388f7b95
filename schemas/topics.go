package schemas

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultPrefix is the topic prefix used when none is configured.
const DefaultPrefix = "fhir"

// Topic layers of the FHIR side of the pipeline, in the order records flow through them.
const (
	LayerRaw    = "raw"    // exactly the exported NDJSON lines, written by the fetcher
	LayerValid  = "valid"  // lines that passed structural validation
	LayerUnique = "unique" // valid lines with repeats and stale versions removed
)

// Topics names every topic of the contract under one prefix. The zero value is not
// usable; call NewTopics.
//
// With the default prefix "fhir" the names are:
//
//	fhir.raw.<Type>, fhir.valid.<Type>, fhir.unique.<Type>   FHIR JSON per resource type
//	omop.<table>                                             Avro OMOP CDM rows
//	fhir.dlq                                                 dead letters of every stage
//	fhir.state.<name>                                        compacted state and changelogs
//
// A non-default prefix P gives P.raw.<Type>, P.omop.<table>, P.dlq and P.state.<name>, so
// several pipelines can share one cluster without their OMOP topics colliding.
type Topics struct {
	Prefix string
}

// NewTopics returns the topic names under prefix ("" means DefaultPrefix).
func NewTopics(prefix string) (Topics, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !validTopicPart.MatchString(prefix) {
		return Topics{}, fmt.Errorf("topic prefix %q: only letters, digits, '.', '_' and '-' are allowed", prefix)
	}
	return Topics{Prefix: prefix}, nil
}

// MustTopics is NewTopics for constant prefixes known to be valid.
func MustTopics(prefix string) Topics {
	t, err := NewTopics(prefix)
	if err != nil {
		panic(err)
	}
	return t
}

var validTopicPart = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

// Raw is the topic of exported resources of resourceType.
func (t Topics) Raw(resourceType string) string { return t.layer(LayerRaw, resourceType) }

// Valid is the topic of validated resources of resourceType.
func (t Topics) Valid(resourceType string) string { return t.layer(LayerValid, resourceType) }

// Unique is the topic of deduplicated resources of resourceType.
func (t Topics) Unique(resourceType string) string { return t.layer(LayerUnique, resourceType) }

func (t Topics) layer(layer, resourceType string) string {
	return t.Prefix + "." + layer + "." + resourceType
}

// LayerPattern is a regular expression (as franz-go's ConsumeRegex takes) matching every
// topic of one layer, so a consumer picks up new resource types as they appear.
func (t Topics) LayerPattern(layer string) string {
	return "^" + regexp.QuoteMeta(t.Prefix+"."+layer+".") + `[A-Za-z]+$`
}

// OMOP is the topic of rows of an OMOP CDM table.
func (t Topics) OMOP(table string) string {
	if t.Prefix == DefaultPrefix {
		return "omop." + table
	}
	return t.Prefix + ".omop." + table
}

// OMOPPattern matches every OMOP table topic.
func (t Topics) OMOPPattern() string {
	return "^" + regexp.QuoteMeta(t.OMOP("")) + `[a-z_]+$`
}

// Group is the consumer group (and transactional id base) of a stage or tool named name,
// such as "fhirstream-validate": name itself under the default prefix, "<prefix>-<name>"
// under any other, as the OMOP topics are. Pipelines on different topic prefixes can then
// share a cluster without joining each other's groups, whose members would otherwise be
// assigned the other pipeline's partitions.
func (t Topics) Group(name string) string {
	if t.Prefix == DefaultPrefix {
		return name
	}
	return t.Prefix + "-" + name
}

// DLQ is the dead-letter topic shared by all stages.
func (t Topics) DLQ() string { return t.Prefix + ".dlq" }

// State is a compacted topic holding state or a changelog, e.g. State("dedupe").
func (t Topics) State(name string) string { return t.Prefix + ".state." + name }

// ParseLayerTopic splits "<prefix>.<layer>.<Type>" into layer and resource type.
func (t Topics) ParseLayerTopic(topic string) (layer, resourceType string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.Prefix+".")
	if !found {
		return "", "", false
	}
	layer, resourceType, found = strings.Cut(rest, ".")
	if !found || resourceType == "" || strings.Contains(resourceType, ".") {
		return "", "", false
	}
	switch layer {
	case LayerRaw, LayerValid, LayerUnique, LayerDeid:
		return layer, resourceType, true
	}
	return "", "", false
}

// ParseOMOPTopic returns the table of an OMOP topic.
func (t Topics) ParseOMOPTopic(topic string) (table string, ok bool) {
	table, ok = strings.CutPrefix(topic, t.OMOP(""))
	return table, ok && table != ""
}

package gold

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fhirstream/fhirstream/internal/vocab"
)

// ingredientVocabularies are the vocabularies whose Ingredient concepts drug eras roll up
// to. ETL-CMS's script names RxNorm only; RxNorm Extension (OHDSI's own ingredients for
// drugs outside the US) is included so that such drugs get eras too, a deliberate
// widening documented in docs/omop-mapping.md.
var ingredientVocabularies = []string{"RxNorm", "RxNorm Extension"}

// Ingredients maps drug concepts to the ingredients they descend from, from a
// vocabulary's CONCEPT (which concepts are ingredients) and CONCEPT_ANCESTOR (what
// descends from them; every concept is its own descendant there).
type Ingredients struct {
	of map[int32][]int32
}

// Of returns the ingredients of a drug concept, none when unknown. The slice is shared.
func (in *Ingredients) Of(drug int32) []int32 { return in.of[drug] }

// Len is the number of drug concepts with at least one ingredient.
func (in *Ingredients) Len() int { return len(in.of) }

// LoadIngredients streams CONCEPT and CONCEPT_ANCESTOR of the Athena download in dir
// (vocab.Tables). It keeps only the ancestor rows whose ancestor is an ingredient: a few
// million entries for a full release, against the hundred million rows of the table.
func LoadIngredients(dir string) (*Ingredients, error) {
	concept, _ := vocab.Table("concept")
	ancestor, _ := vocab.Table("concept_ancestor")
	isIngredient := map[int32]bool{}
	// concept: concept_id 0, vocabulary_id 3, concept_class_id 4.
	_, ok, err := concept.StreamFile(dir, func(r vocab.Row) error {
		if r[4] == "Ingredient" && slices.Contains(ingredientVocabularies, r[3].(string)) {
			isIngredient[int32(r[0].(int64))] = true
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("vocabulary %s: no %s: %w", dir, concept.File(), ErrNoVocabulary)
	}
	in := &Ingredients{of: map[int32][]int32{}}
	// concept_ancestor: ancestor_concept_id 0, descendant_concept_id 1.
	_, ok, err = ancestor.StreamFile(dir, func(r vocab.Row) error {
		a, d := int32(r[0].(int64)), int32(r[1].(int64))
		if isIngredient[a] && !slices.Contains(in.of[d], a) {
			in.of[d] = append(in.of[d], a)
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("vocabulary %s: no %s: %w", dir, ancestor.File(), ErrNoVocabulary)
	}
	for _, v := range in.of {
		slices.Sort(v)
	}
	return in, nil
}

// VocabularyVersion reads vocabulary_version of the VOCABULARY row 'None', where Athena
// records the release ("v5.0 30-AUG-24"). It is an error when dir has no VOCABULARY file
// or no such row.
func VocabularyVersion(dir string) (string, error) {
	t, _ := vocab.Table("vocabulary")
	version, found := "", false
	// vocabulary: vocabulary_id 0, vocabulary_version 3.
	_, ok, err := t.StreamFile(dir, func(r vocab.Row) error {
		if r[0] == "None" {
			found = true
			if v, isString := r[3].(string); isString {
				version = v
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("vocabulary %s: no %s", dir, t.File())
	case !found || version == "":
		return "", errors.New("vocabulary: VOCABULARY has no 'None' row with a vocabulary_version")
	}
	return version, nil
}

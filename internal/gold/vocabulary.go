package gold

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fhirstream/fhirstream/internal/vocab"
)

// VocabularyTables streams one vocabulary table as typed rows (vocab.Row, in the
// TableDef's column order): found is false when the vocabulary has no such table. Files
// of an Athena download are FileTables; the lake's tables (`vocab load`) are another.
type VocabularyTables func(def *vocab.TableDef, row func(vocab.Row) error) (found bool, err error)

// FileTables reads the vocabulary tables of the Athena download in dir.
func FileTables(dir string) VocabularyTables {
	return func(def *vocab.TableDef, row func(vocab.Row) error) (bool, error) {
		_, ok, err := def.StreamFile(dir, row)
		if err != nil {
			return ok, fmt.Errorf("vocabulary %s: %w", dir, err)
		}
		return ok, nil
	}
}

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

// LoadIngredients streams CONCEPT and CONCEPT_ANCESTOR of the Athena download in dir.
func LoadIngredients(dir string) (*Ingredients, error) { return ReadIngredients(FileTables(dir)) }

// ReadIngredients streams CONCEPT and CONCEPT_ANCESTOR of a vocabulary. It keeps only
// the ancestor rows whose ancestor is an ingredient: a few million entries for a full
// release, against the hundred million rows of the table. A vocabulary without either
// table is ErrNoVocabulary.
func ReadIngredients(tables VocabularyTables) (*Ingredients, error) {
	concept, _ := vocab.Table("concept")
	ancestor, _ := vocab.Table("concept_ancestor")
	isIngredient := map[int32]bool{}
	// concept: concept_id 0, vocabulary_id 3, concept_class_id 4.
	ok, err := tables(concept, func(r vocab.Row) error {
		if r[4] == "Ingredient" && slices.Contains(ingredientVocabularies, r[3].(string)) {
			isIngredient[int32(r[0].(int64))] = true
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("the vocabulary has no %s: %w", concept.File(), ErrNoVocabulary)
	}
	in := &Ingredients{of: map[int32][]int32{}}
	// concept_ancestor: ancestor_concept_id 0, descendant_concept_id 1.
	ok, err = tables(ancestor, func(r vocab.Row) error {
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
		return nil, fmt.Errorf("the vocabulary has no %s: %w", ancestor.File(), ErrNoVocabulary)
	}
	for _, v := range in.of {
		slices.Sort(v)
	}
	return in, nil
}

// VocabularyVersion reads vocabulary_version of the VOCABULARY row 'None' of the Athena
// download in dir.
func VocabularyVersion(dir string) (string, error) { return ReadVocabularyVersion(FileTables(dir)) }

// ReadVocabularyVersion reads vocabulary_version of the VOCABULARY row 'None', where
// Athena records the release ("v5.0 30-AUG-24"). It is an error when the vocabulary has
// no VOCABULARY table or no such row.
func ReadVocabularyVersion(tables VocabularyTables) (string, error) {
	t, _ := vocab.Table("vocabulary")
	version, found := "", false
	// vocabulary: vocabulary_id 0, vocabulary_version 3.
	ok, err := tables(t, func(r vocab.Row) error {
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
		return "", fmt.Errorf("the vocabulary has no %s", t.File())
	case !found || version == "":
		return "", errors.New("vocabulary: VOCABULARY has no 'None' row with a vocabulary_version")
	}
	return version, nil
}

// vocabularyInfo is what a refresh takes from its vocabulary, or why it could not.
type vocabularyInfo struct {
	ingredients   *Ingredients
	noIngredients error // why ingredients is nil
	version       string
	noVersion     error // why version could not be read ("" without a vocabulary is fine)
}

func readVocabulary(tables VocabularyTables) vocabularyInfo {
	if tables == nil {
		return vocabularyInfo{noIngredients: ErrNoVocabulary}
	}
	var v vocabularyInfo
	v.version, v.noVersion = ReadVocabularyVersion(tables)
	if v.ingredients, v.noIngredients = ReadIngredients(tables); v.noIngredients != nil {
		v.noIngredients = fmt.Errorf("drug_era needs ingredients from the vocabulary: %w", v.noIngredients)
	}
	return v
}

package deid

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
)

// apply runs r's method on value i alone (process walks the values below it).
func (e *Engine) apply(w *worker, r *rule, i int32, shift int) error {
	d := &w.doc
	switch r.kind {
	case kindKeep:
		return nil
	case kindPerturb:
		if d.primitive(i) && d.s.isNumeric(d.typ[i]) && d.tree.Nodes[i].Type == jsontree.TypeNumber {
			d.replace(i, e.perturb(w, r, d, i))
		}
		return nil
	case kindGeneralize:
		if d.primitive(i) {
			return e.generalize(w, r, i)
		}
		return nil
	}
	if !d.primitive(i) {
		if r.kind == kindSubstitute {
			if !r.replaceObj {
				return e.reject(d, r, i, "replaceWith is %s; the element is %s", kindOf(false), kindOf(true))
			}
			d.replace(i, r.replaceWith)
		}
		return nil // the other methods act on the primitives below
	}
	parent := d.tree.Nodes[i].Parent
	if d.tree.Nodes[parent].Type == jsontree.TypeArray {
		parent = d.tree.Nodes[parent].Parent
	}
	v := primValue{text: d.str(i), json: d.tree.Nodes[i].Type, typ: d.typ[i], name: d.nameID[i], parent: d.typ[parent]}
	at := len(d.arena)
	ed, arena, _, err := e.edit(w, r, &v, d.arena, shift, false)
	if err != nil {
		return e.reject(d, r, i, "%v", err)
	}
	d.arena = arena
	switch ed {
	case editRemove:
		d.remove(i)
	case editReplace:
		d.flags[i] |= flagReplaced
		d.repl[i] = [2]int32{int32(at), int32(len(d.arena))}
	}
	return nil
}

func kindOf(object bool) string {
	if object {
		return "an object"
	}
	return "a primitive"
}

func (e *Engine) reject(d *document, r *rule, i int32, format string, args ...any) error {
	return stage.Reject(ClassRule, d.path(i), r.String()+": "+format, args...)
}

// primValue is a primitive value a method edits: its text (a string's value, a
// number's digits, "" for true and false), JSON type, FHIR type, element name and the
// FHIR type of the object holding it.
type primValue struct {
	text   string
	json   jsontree.Type
	typ    typeID
	name   int32
	parent typeID
	// plain says text and what a method keeps of it need no escaping in JSON.
	plain bool
}

// editKind is what a method does to a primitive value.
type editKind uint8

const (
	editKeep    editKind = iota
	editRemove           // the value goes
	editReplace          // the value is replaced by the JSON text the method appended
	editShift            // a date to shift by the document's shift, which is not known yet
)

// edit applies r's method (keep, redact, dateShift, substitute, cryptoHash or encrypt:
// perturb and generalize read the document) to primitive v: it returns what happens to
// the value, and for editReplace the value's new JSON text appended to dst. With
// deferShift, a date to shift is editShift (with its parsed date) instead, for a
// caller that learns the shift later; the shifted text has the length of v.text.
func (e *Engine) edit(w *worker, r *rule, v *primValue, dst []byte, shift int, deferShift bool) (editKind, []byte, fhirDate, error) {
	v.plain = w.doc.plain
	switch r.kind {
	case kindKeep:
		return editKeep, dst, fhirDate{}, nil
	case kindRedact:
		ed, dst := e.redact(w, v, dst)
		return ed, dst, fhirDate{}, nil
	case kindDateShift:
		if !e.s.isDate(v.typ) {
			return editKeep, dst, fhirDate{}, nil
		}
		date, ok := datePrefix(v.text)
		if !ok || date.day == 0 || date.overThreshold(w.doc.today) {
			ed, dst := e.redactDate(w, v, dst)
			return ed, dst, fhirDate{}, nil
		}
		if deferShift {
			return editShift, dst, date, nil
		}
		if v.plain { // the time zone kept needs no escaping
			return editReplace, append(date.appendShifted(append(dst, '"'), shift), '"'), fhirDate{}, nil
		}
		w.doc.buf = date.appendShifted(w.doc.buf[:0], shift)
		return editReplace, appendJSONString(dst, w.doc.buf), fhirDate{}, nil
	case kindSubstitute:
		if r.replaceObj {
			return editKeep, dst, fhirDate{}, fmt.Errorf("replaceWith is %s; the element is %s", kindOf(true), kindOf(false))
		}
		return editReplace, append(dst, r.replaceWith...), fhirDate{}, nil
	case kindCryptoHash, kindEncrypt:
		if v.json != jsontree.TypeString {
			return editKeep, dst, fhirDate{}, fmt.Errorf("%s takes strings; this element is a %s", r.method, e.s.name(v.typ))
		}
		switch {
		case r.kind == kindEncrypt:
			dst = appendJSONString(dst, e.encrypt(v.text))
		case v.name == e.s.referenceName && v.parent == e.s.reference:
			if v.plain { // the parts of the reference kept need no escaping
				dst = append(e.appendPseudonymReference(w, append(dst, '"'), v.text), '"')
			} else {
				w.doc.buf = e.appendPseudonymReference(w, w.doc.buf[:0], v.text)
				dst = appendJSONString(dst, w.doc.buf)
			}
		default:
			dst = append(e.appendPseudonym(w, append(dst, '"'), v.text), '"')
		}
		return editReplace, dst, fhirDate{}, nil
	}
	return editKeep, dst, fhirDate{}, fmt.Errorf("%s is not applied by edit", r.method)
}

// redact removes primitive v, or keeps the part of it Safe Harbor allows when the
// parameters ask for that: a date's year, an age up to 89, a ZIP code's first three
// digits.
func (e *Engine) redact(w *worker, v *primValue, dst []byte) (editKind, []byte) {
	p := e.params
	s := e.s
	switch {
	case s.isDate(v.typ) && v.json == jsontree.TypeString:
		return e.redactDate(w, v, dst)
	case v.name == s.valueName && v.parent == s.age && v.json == jsontree.TypeNumber && p.EnablePartialAgesForRedact:
		age, err := strconv.ParseFloat(v.text, 64)
		switch {
		case err == nil && age <= ageThreshold:
			return editKeep, dst
		case err == nil && p.AggregateAgesOver89:
			return editReplace, strconv.AppendInt(dst, ageThreshold+1, 10)
		}
	case v.name == s.postalCodeName && v.parent == s.address && p.EnablePartialZipCodesForRedact:
		return editReplace, appendJSONString(dst, partialZip(v.text, p.RestrictedZipCodeTabulationAreas))
	}
	return editRemove, dst
}

// redactDate removes date v, or keeps its year when partial dates are enabled and the
// date does not indicate an age over 89 (which aggregateAgesOver89 puts in the "90 or
// older" category instead). A year alone is a valid date and dateTime but not a valid
// instant, which FHIR requires to the second: an instant keeps its year as that year's
// first instant, YYYY-01-01T00:00:00Z, which says no more than the year.
func (e *Engine) redactDate(w *worker, v *primValue, dst []byte) (editKind, []byte) {
	p := e.params
	today := w.doc.today
	date, ok := datePrefix(v.text)
	var year fhirDate
	switch {
	case !ok || !p.EnablePartialDatesForRedact && !date.overThreshold(today):
		return editRemove, dst
	case date.overThreshold(today):
		if !p.AggregateAgesOver89 {
			return editRemove, dst
		}
		year = over89(today)
	default:
		year = fhirDate{year: date.year}
	}
	dst = year.appendYear(append(dst, '"'))
	if v.typ == e.s.instant {
		dst = append(dst, "-01-01T00:00:00Z"...)
	}
	return editReplace, append(dst, '"')
}

// over89 is the date standing for "90 or older": the year 90 years before today.
func over89(today fhirDate) fhirDate {
	return fhirDate{year: today.year - ageThreshold - 1}
}

// partialZip keeps the first three digits of a ZIP code and zeroes the other digits;
// all digits are zeroed in the restricted three-digit areas (fewer than 20,000 people).
func partialZip(zip string, restricted []string) string {
	for _, area := range restricted {
		if strings.HasPrefix(zip, area) {
			return zeroDigits(zip)
		}
	}
	if len(zip) < 3 {
		return zip
	}
	return zip[:3] + zeroDigits(zip[3:])
}

func zeroDigits(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= '0' && c <= '9' {
			b[i] = '0'
		}
	}
	return string(b)
}

// appendPseudonym appends cryptoHash of v to dst: the hex HMAC-SHA256 of v under the
// cryptoHash key, 64 characters of [0-9a-f], a valid FHIR id.
func (e *Engine) appendPseudonym(w *worker, dst []byte, v string) []byte {
	return append(dst, w.ids.sum(v)[:]...)
}

// appendPseudonymReference appends cryptoHash of a Reference.reference to dst: only the
// id is replaced so that the reference still resolves to its (pseudonymised) target:
//
//	Patient/123, http://x/fhir/Patient/123/_history/2  the id part
//	urn:uuid:X, urn:oid:X, #X (contained)                X
//	Practitioner?identifier=system|V                     V (as Identifier.value is hashed)
//
// Anything else is hashed whole.
func (e *Engine) appendPseudonymReference(w *worker, dst []byte, ref string) []byte {
	// The commonest form first: Type/id, a relative reference without query or history
	// (what the general reading below makes of it). IndexByte's vector search finds the
	// slashes and question marks faster than a loop over every byte, which was a tenth
	// of the stage's own time.
	if at := strings.IndexByte(ref, '/'); at > 0 && at < len(ref)-1 &&
		strings.IndexByte(ref[at+1:], '/') < 0 && strings.IndexByte(ref, '?') < 0 && isTypeName(ref[:at]) {
		return e.appendPseudonym(w, append(dst, ref[:at+1]...), ref[at+1:])
	}
	for _, prefix := range []string{"urn:uuid:", "urn:oid:", "#"} {
		if rest, ok := strings.CutPrefix(ref, prefix); ok && rest != "" {
			return e.appendPseudonym(w, append(dst, prefix...), rest)
		}
	}
	if path, query, ok := strings.Cut(ref, "?"); ok {
		if ident, ok := strings.CutPrefix(query, "identifier="); ok && !strings.Contains(ident, "&") {
			if system, value, ok := strings.Cut(ident, "|"); ok && value != "" {
				dst = append(append(append(append(dst, path...), "?identifier="...), system...), '|')
				return e.appendPseudonym(w, dst, value)
			}
		}
		return e.appendPseudonym(w, dst, ref)
	}
	body, history, _ := strings.Cut(ref, "/_history/")
	slash := strings.LastIndexByte(body, '/')
	if slash <= 0 || slash == len(body)-1 {
		return e.appendPseudonym(w, dst, ref)
	}
	typ := body[strings.LastIndexByte(body[:slash], '/')+1 : slash]
	if !isTypeName(typ) {
		return e.appendPseudonym(w, dst, ref)
	}
	dst = e.appendPseudonym(w, append(dst, body[:slash+1]...), body[slash+1:])
	if history != "" {
		dst = append(append(dst, "/_history/"...), history...)
	}
	return dst
}

func isTypeName(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// encrypt is AES-CBC with a random IV and PKCS#7 padding, written base64(IV ||
// ciphertext): the same value encrypts differently each time.
func (e *Engine) encrypt(v string) string {
	bs := e.block.BlockSize()
	pad := bs - len(v)%bs
	buf := make([]byte, bs+len(v)+pad)
	iv := buf[:bs]
	_, _ = rand.Read(iv) // never fails (crypto/rand, Go 1.24 and later)
	copy(buf[bs:], v)
	for k := bs + len(v); k < len(buf); k++ {
		buf[k] = byte(pad)
	}
	cipher.NewCBCEncrypter(e.block, iv).CryptBlocks(buf[bs:], buf[bs:])
	return base64.StdEncoding.EncodeToString(buf)
}

// perturb adds noise to number i, uniform over [-span/2, span/2] (times the value for
// a proportional range), rounded to roundTo decimals (0 for integer types, 2 for
// decimals by default). The noise is drawn from a keyed hash of the resource, the
// element and the value rather than a random source, so processing a record again (after
// an aborted transaction, a replay) gives the same output.
func (e *Engine) perturb(w *worker, r *rule, d *document, i int32) string {
	v, err := strconv.ParseFloat(d.str(i), 64)
	if err != nil {
		return d.str(i)
	}
	msg := append(d.buf[:0], "perturb\x00"...)
	if id := d.tree.Child(0, "id"); id >= 0 {
		msg = append(msg, d.str(id)...)
	}
	msg = append(append(append(append(msg, 0), d.path(i)...), 0), d.str(i)...)
	mac := w.ids.mac
	mac.Reset()
	mac.Write(msg)
	d.buf = mac.Sum(msg[:0])
	u := float64(binary.BigEndian.Uint64(d.buf)>>11) / (1 << 53) // [0, 1)
	span := r.span
	if r.proportion {
		span *= math.Abs(v)
	}
	v += (u - 0.5) * span
	integer := d.typ[i] != d.s.decimal
	round := r.roundTo
	if round < 0 {
		round = 2
	}
	if integer {
		round = 0
		switch d.typ[i] {
		case d.s.positiveInt:
			v = math.Max(v, 1)
		case d.s.unsignedInt:
			v = math.Max(v, 0)
		}
	}
	scale := math.Pow(10, float64(round))
	v = math.Round(v*scale) / scale
	return strconv.FormatFloat(v, 'f', round, 64)
}

// generalize replaces primitive i by the value of the first case whose condition holds
// for it, or applies otherValues.
func (e *Engine) generalize(w *worker, r *rule, i int32) error {
	d := &w.doc
	this := []item{{node: i}}
	for _, c := range r.cases {
		t, err := w.ev.truth(c.cond, this, this)
		if err != nil {
			return e.reject(d, r, i, "%v", err)
		}
		if t != 1 {
			continue
		}
		vals, err := w.ev.eval(c.value, this, this)
		if err != nil {
			return e.reject(d, r, i, "%v", err)
		}
		if len(vals) != 1 {
			return e.reject(d, r, i, "a case's value gave %d values, not one", len(vals))
		}
		v := w.ev.value(vals[0])
		switch v.kind {
		case litNumber:
			if d.tree.Nodes[i].Type == jsontree.TypeNumber {
				s := v.s
				if s == "" || vals[0].node < 0 && s != strconv.FormatFloat(v.f, 'f', -1, 64) {
					s = strconv.FormatFloat(v.f, 'f', -1, 64)
				}
				d.replace(i, s)
			} else {
				d.replaceString(i, strconv.FormatFloat(v.f, 'f', -1, 64))
			}
		case litBool:
			d.replace(i, strconv.FormatBool(v.b))
		case litString, litDate:
			if d.tree.Nodes[i].Type == jsontree.TypeNumber {
				return e.reject(d, r, i, "a case gave a string for a number")
			}
			d.replaceString(i, v.s)
		default:
			return e.reject(d, r, i, "a case's value is not a primitive")
		}
		return nil
	}
	if !r.otherKeep {
		d.remove(i)
	}
	return nil
}

// shiftDays is the date shift of the document: from the keyed hash of its scope's
// id, in [-50, 50] days as the anonymizer's. The patient scope uses the id of the
// patient the resource belongs to (the Patient's own id, or the Patient its subject,
// patient or beneficiary refers to), so all of a patient's resources shift alike and
// intervals between them survive; a resource of no patient (a Practitioner) uses its own.
func (e *Engine) shiftDays(w *worker, d *document) int {
	var sc shiftScope
	if i := d.tree.Child(0, "id"); i >= 0 && d.tree.Nodes[i].Type == jsontree.TypeString {
		sc.id = d.str(i)
	}
	for k, el := range shiftElements {
		if e.scope != "patient" {
			break
		}
		if ref := d.tree.Child(0, el); ref >= 0 {
			if r := d.tree.Child(ref, "reference"); r >= 0 && d.tree.Nodes[r].Type == jsontree.TypeString {
				sc.ref[k], sc.has[k] = d.str(r), true
			}
		}
	}
	return e.shiftOf(w, d.typ[0], &sc)
}

// shiftElements are the elements whose Reference names the patient a resource belongs
// to, in the order they are looked at.
var shiftElements = [3]string{"subject", "patient", "beneficiary"}

// shiftScope is what a document's date shift is made of: the resource's id (its first
// id member, when a string) and the reference of the first member of each of
// shiftElements (its first reference member, when a string).
type shiftScope struct {
	id  string
	ref [len(shiftElements)]string
	has [len(shiftElements)]bool
}

// shiftOf is shiftDays for a resource of type rt with scope sc.
func (e *Engine) shiftOf(w *worker, rt typeID, sc *shiftScope) int {
	id := sc.id
	if e.scope == "patient" && rt != e.s.patient {
		for k := range sc.ref {
			if !sc.has[k] {
				continue
			}
			if p, ok := patientID(sc.ref[k]); ok {
				id = p
				break
			}
		}
	}
	// The first eight bytes of the HMAC, big-endian: the first 16 hex digits.
	var first [8]byte
	_, _ = hex.Decode(first[:], w.shifts.sum(id)[:16])
	return int(binary.BigEndian.Uint64(first[:])%101) - 50
}

// patientID returns the id of the Patient a Reference.reference s names: "Patient/X"
// (or an absolute URL ending so) or "urn:uuid:X".
func patientID(s string) (string, bool) {
	if rest, ok := strings.CutPrefix(s, "Patient/"); ok && rest != "" && strings.IndexByte(rest, '/') < 0 {
		return rest, true // the commonest form, as the general reading below takes it
	}
	if rest, ok := strings.CutPrefix(s, "urn:uuid:"); ok && rest != "" {
		return rest, true
	}
	s, _, _ = strings.Cut(s, "/_history/")
	if i := strings.LastIndex(s, "Patient/"); i >= 0 && (i == 0 || s[i-1] == '/') && len(s) > i+len("Patient/") {
		return s[i+len("Patient/"):], true
	}
	return "", false
}

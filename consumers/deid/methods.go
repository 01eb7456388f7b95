package deid

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math"
	"strconv"
	"strings"

	"github.com/fhirstream/fhirstream/consumers/stage"
	"github.com/fhirstream/fhirstream/internal/jsontree"
)

// apply runs r's method on value i alone (process walks the values below it).
func (e *Engine) apply(w *worker, r *rule, i int32, shift int) error {
	d := &w.doc
	switch r.method {
	case methodKeep:
		return nil
	case methodRedact:
		e.redact(d, i)
		return nil
	case methodDateShift:
		if d.s.isDate(d.typ[i]) && d.primitive(i) {
			e.dateShift(d, i, shift)
		}
		return nil
	case methodSubstitute:
		if r.replaceObj != !d.primitive(i) {
			return e.reject(d, r, i, "replaceWith is %s; the element is %s", kindOf(r.replaceObj), kindOf(!d.primitive(i)))
		}
		d.replace(i, r.replaceWith)
		return nil
	}
	if !d.primitive(i) {
		return nil // the method acts on the primitives below
	}
	switch r.method {
	case methodCryptoHash, methodEncrypt:
		if d.tree.Nodes[i].Type != jsontree.TypeString {
			return e.reject(d, r, i, "%s takes strings; this element is a %s", r.method, d.s.name(d.typ[i]))
		}
		v := d.str(i)
		if r.method == methodEncrypt {
			d.replaceString(i, e.encrypt(v))
		} else if d.name[i] == "reference" && d.typ[d.tree.Nodes[i].Parent] == d.s.reference {
			d.replaceString(i, e.pseudonymReference(w, v))
		} else {
			d.replaceString(i, e.pseudonym(w, v))
		}
	case methodPerturb:
		if d.s.isNumeric(d.typ[i]) && d.tree.Nodes[i].Type == jsontree.TypeNumber {
			d.replace(i, e.perturb(w, r, d, i))
		}
	case methodGeneralize:
		return e.generalize(w, r, i)
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

// redact removes primitive i, or keeps the part of it Safe Harbor allows when the
// parameters ask for that: a date's year, an age up to 89, a ZIP code's first three
// digits.
func (e *Engine) redact(d *document, i int32) {
	if !d.primitive(i) {
		return // objects go when nothing below them is left
	}
	p := e.params
	t := d.typ[i]
	parent := d.tree.Nodes[i].Parent
	if d.tree.Nodes[parent].Type == jsontree.TypeArray {
		parent = d.tree.Nodes[parent].Parent
	}
	switch {
	case d.s.isDate(t) && d.tree.Nodes[i].Type == jsontree.TypeString:
		e.redactDate(d, i)
		return
	case d.name[i] == "value" && d.typ[parent] == d.s.age && d.tree.Nodes[i].Type == jsontree.TypeNumber && p.EnablePartialAgesForRedact:
		age, err := strconv.ParseFloat(d.str(i), 64)
		switch {
		case err == nil && age <= ageThreshold:
			return
		case err == nil && p.AggregateAgesOver89:
			d.replace(i, strconv.Itoa(ageThreshold+1))
			return
		}
	case d.name[i] == "postalCode" && d.typ[parent] == d.s.address && p.EnablePartialZipCodesForRedact:
		d.replaceString(i, partialZip(d.str(i), p.RestrictedZipCodeTabulationAreas))
		return
	}
	d.remove(i)
}

// redactDate removes date i, or keeps its year when partial dates are enabled and the
// date does not indicate an age over 89 (which aggregateAgesOver89 puts in the "90 or
// older" category instead).
func (e *Engine) redactDate(d *document, i int32) {
	p := e.params
	date, ok := datePrefix(d.str(i))
	switch {
	case !ok || !p.EnablePartialDatesForRedact && !date.overThreshold(d.today):
		d.remove(i)
	case date.overThreshold(d.today):
		if p.AggregateAgesOver89 {
			d.replaceString(i, over89Year(d.today))
		} else {
			d.remove(i)
		}
	default:
		d.replaceString(i, date.yearOnly())
	}
}

// over89Year is the date standing for "90 or older": the year 90 years before today.
func over89Year(today fhirDate) string {
	return fhirDate{year: today.year - ageThreshold - 1}.yearOnly()
}

// dateShift moves date i by shift days (time of day zeroed, zone kept). A date
// without a day, or indicating an age over 89, cannot be shifted safely: it is redacted.
func (e *Engine) dateShift(d *document, i int32, shift int) {
	date, ok := datePrefix(d.str(i))
	if !ok || date.day == 0 || date.overThreshold(d.today) {
		e.redactDate(d, i)
		return
	}
	d.replaceString(i, date.shifted(shift))
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

// maxPseudonyms bounds a worker's cache of pseudonyms made: references repeat (a
// patient's id in each of their resources), and HMAC is most of the method's cost.
const maxPseudonyms = 1 << 14

// pseudonym is cryptoHash: the hex HMAC-SHA256 of v under the cryptoHash key, 64
// characters of [0-9a-f], a valid FHIR id.
func (e *Engine) pseudonym(w *worker, v string) string {
	if p, ok := w.hashes[v]; ok {
		return p
	}
	w.hashID.Reset()
	w.hashID.Write([]byte(v))
	w.sum = w.hashID.Sum(w.sum[:0])
	p := hex.EncodeToString(w.sum)
	if len(w.hashes) >= maxPseudonyms {
		clear(w.hashes)
	}
	w.hashes[strings.Clone(v)] = p
	return p
}

// pseudonymReference is cryptoHash of a Reference.reference: only the id is replaced
// so that the reference still resolves to its (pseudonymised) target:
//
//	Patient/123, http://x/fhir/Patient/123/_history/2  the id part
//	urn:uuid:X, urn:oid:X, #X (contained)                X
//	Practitioner?identifier=system|V                     V (as Identifier.value is hashed)
//
// Anything else is hashed whole.
func (e *Engine) pseudonymReference(w *worker, ref string) string {
	for _, prefix := range []string{"urn:uuid:", "urn:oid:", "#"} {
		if rest, ok := strings.CutPrefix(ref, prefix); ok && rest != "" {
			return prefix + e.pseudonym(w, rest)
		}
	}
	if path, query, ok := strings.Cut(ref, "?"); ok {
		if ident, ok := strings.CutPrefix(query, "identifier="); ok && !strings.Contains(ident, "&") {
			if system, value, ok := strings.Cut(ident, "|"); ok && value != "" {
				return path + "?identifier=" + system + "|" + e.pseudonym(w, value)
			}
		}
		return e.pseudonym(w, ref)
	}
	body, history, _ := strings.Cut(ref, "/_history/")
	slash := strings.LastIndexByte(body, '/')
	if slash <= 0 || slash == len(body)-1 {
		return e.pseudonym(w, ref)
	}
	typ := body[strings.LastIndexByte(body[:slash], '/')+1 : slash]
	if !isTypeName(typ) {
		return e.pseudonym(w, ref)
	}
	out := body[:slash+1] + e.pseudonym(w, body[slash+1:])
	if history != "" {
		out += "/_history/" + history
	}
	return out
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
	w.hashID.Reset()
	w.hashID.Write([]byte("perturb\x00"))
	if id := d.tree.Child(0, "id"); id >= 0 {
		w.hashID.Write([]byte(d.str(id)))
	}
	w.hashID.Write([]byte{0})
	w.hashID.Write([]byte(d.path(i)))
	w.hashID.Write([]byte{0})
	w.hashID.Write([]byte(d.str(i)))
	w.sum = w.hashID.Sum(w.sum[:0])
	u := float64(binary.BigEndian.Uint64(w.sum)>>11) / (1 << 53) // [0, 1)
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
	id := ""
	if i := d.tree.Child(0, "id"); i >= 0 && d.tree.Nodes[i].Type == jsontree.TypeString {
		id = d.str(i)
	}
	if e.scope == "patient" && d.typ[0] != d.s.patient {
		for _, el := range []string{"subject", "patient", "beneficiary"} {
			if ref := d.tree.Child(0, el); ref >= 0 {
				if p, ok := patientID(d, ref); ok {
					id = p
					break
				}
			}
		}
	}
	w.shift.Reset()
	w.shift.Write([]byte(id))
	w.sum = w.shift.Sum(w.sum[:0])
	return int(binary.BigEndian.Uint64(w.sum)%101) - 50
}

// patientID returns the id of the Patient Reference node ref names: "Patient/X" (or an
// absolute URL ending so) or "urn:uuid:X" in a subject or patient element.
func patientID(d *document, ref int32) (string, bool) {
	r := d.tree.Child(ref, "reference")
	if r < 0 || d.tree.Nodes[r].Type != jsontree.TypeString {
		return "", false
	}
	s := d.str(r)
	if rest, ok := strings.CutPrefix(s, "urn:uuid:"); ok && rest != "" {
		return rest, true
	}
	s, _, _ = strings.Cut(s, "/_history/")
	if i := strings.LastIndex(s, "Patient/"); i >= 0 && (i == 0 || s[i-1] == '/') && len(s) > i+len("Patient/") {
		return s[i+len("Patient/"):], true
	}
	return "", false
}

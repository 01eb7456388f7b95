package synth

import (
	"strconv"
	"strings"
	"time"
)

// practitioner is what an encounter needs to reference one member of the pool.
type practitioner struct {
	id      uuid
	display string
}

// group is one slice of the shared pool: the Organization, its Location and its
// Practitioners that PatientsPerGroup consecutive patients are seen by. It is rebuilt from
// (Seed, group index) alone, so the pool costs no memory per patient.
type group struct {
	city             int
	orgID, locID     uuid
	orgName, locName string
	pract            [PractitionersPerGroup]practitioner
}

// pool starts group index and writes its Organization, Location and Practitioners.
func (g *gen) pool(index int) {
	reseed(&g.src, g.cfg.Seed, saltPool, index)
	gr := &g.grp
	gr.city = g.intn(len(cities))
	c := &cities[gr.city]
	gr.orgID = newUUID(g.r)
	gr.locID = newUUID(g.r)
	gr.orgName = c.name + " " + *pick(g, orgDescriptors) + " " + *pick(g, orgKinds)
	gr.locName = gr.orgName + " - Main Campus"
	// Pool resources were last touched some time before the export.
	lu := g.end.Add(-g.days(1, 365))

	e := &g.e
	e.header(TypeOrganization, &gr.orgID, 1, lu)
	g.identifierNPI()
	e.fieldBool("active", true)
	e.fieldCodeableList("type", &orgTypeProvider)
	e.field("name", gr.orgName)
	g.telecomPhone()
	g.address(gr.city, false)
	e.endObj()
	g.write(TypeOrganization)

	e.header(TypeLocation, &gr.locID, 1, lu)
	e.field("status", "active")
	e.field("name", gr.locName)
	g.telecomPhone()
	g.address(gr.city, false)
	e.key("position")
	e.obj()
	e.fieldNum("longitude", c.lon+g.uniform(-0.05, 0.05), 6)
	e.fieldNum("latitude", c.lat+g.uniform(-0.05, 0.05), 6)
	e.endObj()
	e.fieldRef("managingOrganization", TypeOrganization, &gr.orgID, gr.orgName)
	e.endObj()
	g.write(TypeLocation)

	for i := range gr.pract {
		pr := &gr.pract[i]
		pr.id = newUUID(g.r)
		female := g.chance(0.5)
		given := g.givenName(female)
		family := *pick(g, familyNames)
		pr.display = "Dr. " + given + " " + family
		e.header(TypePractitioner, &pr.id, 1, lu)
		g.identifierNPI()
		e.fieldBool("active", true)
		e.key("name")
		e.arr()
		e.obj()
		e.field("family", family)
		e.key("given")
		e.arr()
		e.str(given)
		e.endArr()
		e.key("prefix")
		e.arr()
		e.str("Dr.")
		e.endArr()
		e.endObj()
		e.endArr()
		e.key("telecom")
		e.arr()
		e.obj()
		e.field("system", "email")
		e.key("value")
		e.b = append(e.b, '"')
		e.b = append(e.b, strings.ToLower(given)...)
		e.b = append(e.b, '.')
		e.b = append(e.b, strings.ToLower(strings.ReplaceAll(family, "'", ""))...)
		e.b = append(e.b, '.')
		e.b = strconv.AppendInt(e.b, int64(index*PractitionersPerGroup+i), 10)
		e.b = append(e.b, "@ehr.fhirstream.example\""...)
		e.comma = true
		e.field("use", "work")
		e.endObj()
		e.endArr()
		g.address(gr.city, false)
		e.field("gender", gender(female))
		e.endObj()
		g.write(TypePractitioner)
	}
}

func gender(female bool) string {
	if female {
		return "female"
	}
	return "male"
}

func (g *gen) givenName(female bool) string {
	if female {
		return *pick(g, givenFemale)
	}
	return *pick(g, givenMale)
}

// identifierNPI writes a National Provider Identifier. Real NPIs never start with 9, so
// these cannot be mistaken for real providers.
func (g *gen) identifierNPI() {
	e := &g.e
	e.key("identifier")
	e.arr()
	e.obj()
	e.field("system", sysNPI)
	e.key("value")
	e.b = append(e.b, '"', '9')
	e.b = appendDigits(e.b, uint64(g.intn(1e9)), 9)
	e.b = append(e.b, '"')
	e.comma = true
	e.endObj()
	e.endArr()
}

// telecomPhone writes a phone number in the 555 range reserved for fiction.
func (g *gen) telecomPhone() {
	e := &g.e
	e.key("telecom")
	e.arr()
	e.obj()
	e.field("system", "phone")
	e.key("value")
	e.b = append(e.b, "\"555-"...)
	e.b = appendDigits(e.b, uint64(g.intn(1000)), 3)
	e.b = append(e.b, '-')
	e.b = appendDigits(e.b, uint64(g.intn(10000)), 4)
	e.b = append(e.b, '"')
	e.comma = true
	e.endObj()
	e.endArr()
}

// address writes a one-element address array in city ci; home addresses may have an
// apartment line.
func (g *gen) address(ci int, home bool) {
	c := &cities[ci]
	e := &g.e
	e.key("address")
	e.arr()
	e.obj()
	if home {
		e.field("use", "home")
	}
	e.key("line")
	e.arr()
	e.sep()
	e.b = append(e.b, '"')
	e.b = strconv.AppendInt(e.b, int64(1+g.intn(9999)), 10)
	e.b = append(e.b, ' ')
	e.b = append(e.b, *pick(g, streets)...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, *pick(g, streetSuffixes)...)
	e.b = append(e.b, '"')
	e.comma = true
	if home && g.chance(0.2) {
		e.sep()
		e.b = append(e.b, "\"Apt "...)
		e.b = strconv.AppendInt(e.b, int64(1+g.intn(400)), 10)
		e.b = append(e.b, '"')
	}
	e.endArr()
	e.field("city", c.name)
	e.field("state", c.state)
	e.key("postalCode")
	e.b = append(e.b, '"')
	e.b = append(e.b, c.zip3...)
	e.b = appendDigits(e.b, uint64(g.intn(100)), 2)
	e.b = append(e.b, '"')
	e.comma = true
	e.field("country", "US")
	e.endObj()
	e.endArr()
}

// appendDigits appends v zero-padded to width digits.
func appendDigits(b []byte, v uint64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for w := 0; w < width || v > 0; w++ {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[i:]...)
}

// lastUpdated is when a resource recorded at t reached the server: a little after t, and
// never after the export.
func (g *gen) lastUpdated(t time.Time) time.Time {
	return minTime(t.Add(g.days(0.002, 2)), g.end)
}

package synth

import (
	"fmt"
	"sync"
	"time"

	// The IANA database is embedded so that encounter offsets, and with them the output
	// bytes, do not depend on whether the host has tzdata installed.
	_ "time/tzdata"
)

// city is where an organization practises and its patients live. Each has its own time
// zone, so timestamps carry the offsets (and daylight-saving changes) a US EHR would emit.
type city struct {
	name, state, zip3, tz string
	lat, lon              float64
}

var cities = []city{
	{"Boston", "MA", "021", "America/New_York", 42.3601, -71.0589},
	{"Worcester", "MA", "016", "America/New_York", 42.2626, -71.8023},
	{"Springfield", "MA", "011", "America/New_York", 42.1015, -72.5898},
	{"Providence", "RI", "029", "America/New_York", 41.8240, -71.4128},
	{"Hartford", "CT", "061", "America/New_York", 41.7658, -72.6734},
	{"New York", "NY", "100", "America/New_York", 40.7128, -74.0060},
	{"Philadelphia", "PA", "191", "America/New_York", 39.9526, -75.1652},
	{"Baltimore", "MD", "212", "America/New_York", 39.2904, -76.6122},
	{"Atlanta", "GA", "303", "America/New_York", 33.7490, -84.3880},
	{"Miami", "FL", "331", "America/New_York", 25.7617, -80.1918},
	{"Columbus", "OH", "432", "America/New_York", 39.9612, -82.9988},
	{"Detroit", "MI", "482", "America/Detroit", 42.3314, -83.0458},
	{"Chicago", "IL", "606", "America/Chicago", 41.8781, -87.6298},
	{"Minneapolis", "MN", "554", "America/Chicago", 44.9778, -93.2650},
	{"Nashville", "TN", "372", "America/Chicago", 36.1627, -86.7816},
	{"Houston", "TX", "770", "America/Chicago", 29.7604, -95.3698},
	{"Dallas", "TX", "752", "America/Chicago", 32.7767, -96.7970},
	{"Denver", "CO", "802", "America/Denver", 39.7392, -104.9903},
	{"Salt Lake City", "UT", "841", "America/Denver", 40.7608, -111.8910},
	{"Phoenix", "AZ", "850", "America/Phoenix", 33.4484, -112.0740},
	{"Los Angeles", "CA", "900", "America/Los_Angeles", 34.0522, -118.2437},
	{"San Diego", "CA", "921", "America/Los_Angeles", 32.7157, -117.1611},
	{"San Francisco", "CA", "941", "America/Los_Angeles", 37.7749, -122.4194},
	{"Portland", "OR", "972", "America/Los_Angeles", 45.5152, -122.6784},
	{"Seattle", "WA", "981", "America/Los_Angeles", 47.6062, -122.3321},
}

// zones holds the *time.Location of each city, by index.
var zones = sync.OnceValues(func() ([]*time.Location, error) {
	z := make([]*time.Location, len(cities))
	for i, c := range cities {
		loc, err := time.LoadLocation(c.tz)
		if err != nil {
			return nil, fmt.Errorf("load time zone %s: %w", c.tz, err)
		}
		z[i] = loc
	}
	return z, nil
})

var (
	streets = []string{"Main", "Oak", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill",
		"Park", "Pine", "Walnut", "Sunset", "Lincoln", "Jackson", "Church", "River", "Highland",
		"Chestnut", "Franklin", "Spring", "Mill", "Center", "Union", "Forest", "Meadow"}
	streetSuffixes = []string{"Street", "Avenue", "Road", "Lane", "Drive", "Court", "Way",
		"Boulevard", "Place", "Terrace"}

	givenMale = []string{"James", "John", "Robert", "Michael", "William", "David", "Richard",
		"Joseph", "Thomas", "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Mark",
		"Donald", "Steven", "Paul", "Andrew", "Joshua", "Kenneth", "Kevin", "Brian", "George",
		"Timothy", "Ronald", "Edward", "Jason", "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas",
		"Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott", "Brandon", "Benjamin",
		"Samuel", "Gregory", "Alexander", "Patrick", "Frank", "Raymond", "Jack", "Dennis",
		"Jerry", "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Zachary", "Douglas",
		"Peter", "Kyle", "Noah", "Ethan", "Jeremy", "Walter", "Christian", "Keith", "Roger",
		"Terry", "Austin", "Sean", "Gerald", "Carl", "Harold", "Dylan", "Arthur", "Lawrence",
		"Jordan", "Jesse", "Bryan", "Billy", "Bruce", "Gabriel", "Joe", "Logan", "Alan",
		"Juan", "Albert", "Willie", "Elijah", "Wayne", "Randy", "Vincent", "Mason", "Roy",
		"Ralph", "Bobby", "Russell", "Bradley", "Philip", "Eugene", "Wei", "Hiroshi", "Raj",
		"Luis", "Carlos", "Miguel", "Ahmed", "Kwame", "Dmitri"}
	givenFemale = []string{"Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara",
		"Susan", "Jessica", "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Sandra", "Margaret",
		"Ashley", "Kimberly", "Emily", "Donna", "Michelle", "Carol", "Amanda", "Melissa",
		"Deborah", "Stephanie", "Dorothy", "Rebecca", "Sharon", "Laura", "Cynthia", "Amy",
		"Kathleen", "Angela", "Shirley", "Brenda", "Emma", "Anna", "Pamela", "Nicole",
		"Samantha", "Katherine", "Christine", "Helen", "Debra", "Rachel", "Carolyn", "Janet",
		"Maria", "Catherine", "Heather", "Diane", "Olivia", "Julie", "Joyce", "Victoria",
		"Ruth", "Virginia", "Lauren", "Kelly", "Christina", "Joan", "Evelyn", "Judith",
		"Andrea", "Hannah", "Megan", "Cheryl", "Jacqueline", "Martha", "Madison", "Teresa",
		"Gloria", "Sara", "Janice", "Ann", "Kathryn", "Abigail", "Sophia", "Frances", "Jean",
		"Alice", "Judy", "Isabella", "Julia", "Grace", "Amber", "Denise", "Danielle", "Marilyn",
		"Beverly", "Charlotte", "Natalie", "Theresa", "Diana", "Brittany", "Doris", "Kayla",
		"Alexis", "Lori", "Marie", "Mei", "Yuki", "Priya", "Sofia", "Lucia", "Fatima", "Ama",
		"Svetlana"}
	familyNames = []string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
		"Davis", "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
		"Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
		"Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen",
		"King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
		"Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
		"Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
		"Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz",
		"Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim",
		"Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez", "Wood", "James", "Bennett",
		"Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo", "Sanders", "Patel",
		"Myers", "Long", "Ross", "Foster", "Jimenez", "O'Brien", "Chen", "Wang", "Tanaka",
		"Singh", "Okafor", "Kowalski", "Novak", "Schmidt", "Rossi", "Murray", "Sullivan"}

	orgDescriptors = []string{"Community", "Family", "Riverside", "Valley", "Memorial",
		"General", "Lakeside", "Northside", "Westview", "Summit", "Harbor", "Good Samaritan",
		"St. Mary's", "Mercy", "Pioneer", "Cornerstone"}
	orgKinds = []string{"Medical Center", "Health Center", "Hospital", "Family Practice",
		"Primary Care", "Health Partners", "Medical Group", "Clinic"}
)

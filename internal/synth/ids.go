package synth

import "math/rand/v2"

// uuid is a version-4-shaped UUID in its 36-character text form, kept as an array so that
// ids live in the generator's state without allocating.
type uuid [36]byte

// newUUID draws 122 random bits from r. Ids come from the seeded stream rather than
// crypto/rand so that output is reproducible; collisions are as unlikely as for real v4s.
func newUUID(r *rand.Rand) uuid {
	hi, lo := r.Uint64(), r.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	var raw [16]byte
	for i := 0; i < 8; i++ {
		raw[i] = byte(hi >> (56 - 8*i))
		raw[8+i] = byte(lo >> (56 - 8*i))
	}
	const hex = "0123456789abcdef"
	var u uuid
	j := 0
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			u[j] = '-'
			j++
		}
		u[j], u[j+1] = hex[c>>4], hex[c&0xf]
		j += 2
	}
	return u
}

// Stream salts keep the patient streams and the pool streams of one seed apart.
const (
	saltPatient = 0x70617469656e7473 // "patients"
	saltPool    = 0x706f6f6c73000000 // "pools"
)

// mix is the SplitMix64 finaliser: it spreads nearby seeds and indexes over the PCG state
// space so that streams for patient i and i+1 are unrelated.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// reseed points src at the stream for (seed, salt, index).
func reseed(src *rand.PCG, seed uint64, salt uint64, index int) {
	src.Seed(mix(seed^salt), mix(uint64(index)+salt))
}

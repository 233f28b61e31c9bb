package decide

import (
	"math"
	"math/rand/v2"
)

// sampleBeta draws from Beta(a, b) (a, b ≥ 1 here): Thompson sampling
// draws each offer's response rate from its posterior and shows the
// offers with the highest draws, so offers that do well are shown more
// while uncertain ones still get tried.
func sampleBeta(a, b float64) float64 {
	x := sampleGamma(a)
	y := sampleGamma(b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// sampleGamma draws from Gamma(shape, 1) for shape ≥ 1 by Marsaglia and
// Tsang's method ("A simple method for generating gamma variables", 2000).
func sampleGamma(shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rand.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rand.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

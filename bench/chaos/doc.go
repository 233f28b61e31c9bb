// Package chaos owns the running of tailor engines as child processes that
// are killed with SIGKILL and started again, and the checks of what they
// computed against the data they were given: per customer orders and
// revenue against a direct computation of the Online Retail CSV, and every
// segment change record exactly once. "tailor bench chaos" (Run) and the
// crash tests of cmd/tailor use it.
package chaos

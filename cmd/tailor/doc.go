// Command tailor is the real-time personalisation engine: one binary with
// subcommands to run the engine, run the embedded broker alone, import and
// export data, and benchmark a deployment. Run "tailor --help".
package main

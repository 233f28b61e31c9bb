// Package stream owns tailor's Kafka side: the topics and their creation,
// the embedded broker, the producer behind the collect API and import, and
// the processor: a consumer group member that opens one state store per
// assigned partition, applies each poll's records to it in one transaction
// with the offset, and resumes from that stored offset after any crash.
//
// The processor's files, by role:
//
//   - processor.go: the Processor and its partitions, Run and Close
//   - assign.go: assignment and lifecycle (stores opened, producers fenced
//     in, progress markers read; revocation)
//   - worker.go, apply.go: the partition worker's steps (records, wakes,
//     backfills), with output.go for exactly-once outputs, retry.go for
//     outputs Kafka cannot take yet and consent.go for the consent
//     purpose an output carries data for
//   - changelog.go, restore.go: the changelog each batch writes, and the
//     restore or catch-up of a store from it
//   - standby.go, balance.go: standby replicas and the group balancer
//     that places them
//   - reads.go, shared.go, cluster.go: Reads, the read-only view serve and
//     decide use; the statistics instances share; the cluster view
//   - lost.go, fence.go, reroute.go: a lost group session, a failed
//     store, records on the wrong partition
package stream

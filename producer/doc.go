// Package producer is the fetcher: it runs a FHIR Bulk Data export (SMART Backend
// Services auth, kickoff, polling, manifest, parallel NDJSON downloads) or reads local
// NDJSON files, and publishes one Kafka record per resource to the type's raw topic
// (schemas.Topics.Raw), keyed "<Type>/<id>", with the exact line bytes as value and
// provenance headers. Bad lines, export error files and resources too large for one
// record go to the dead-letter topic with their reason; deleted resources become
// tombstones.
//
// # Exactly once across crashes
//
// The fetcher produces with a transactional producer whose transactional id is derived
// from the export's identity (FHIR base, level and parameters, or the local file set),
// so a restarted fetcher with the same command fences any zombie of the previous run and
// aborts its open transaction. Lines are published inside a transaction; every CommitBytes
// (or CommitInterval) the fetcher pauses its download workers between two lines, writes
// one checkpoint record per file that progressed — export id, file, last line, byte
// offset and counters — to the compacted state topic Topics.State("fetcher"), and commits
// the lines and the checkpoints together. On restart it reads the state topic with
// read_committed, so it sees exactly the checkpoints whose lines are visible, re-opens
// each unfinished file at its byte offset (an HTTP Range request, or skipping bytes on a
// local file) and continues with the next line. A crash therefore loses only an
// uncommitted transaction, which read_committed consumers never see, and no line is
// published twice.
//
// The state topic also holds, per export identity, the status URL of the export in
// progress (so a restart resumes polling and downloading the same export rather than
// kicking off a new one) and, once complete, its transactionTime, used as the next
// _since with --since auto. A file's checkpoint is keyed by its export's status URL,
// transactionTime and request together: a server that hands out a status URL again
// serves a new export there, whose files start afresh. Which export a run works on
// (resume, kick off, cancel, release, give up) is decided by decideSession alone, from
// the state and what the server answered; the I/O around it carries the decision out.
//
// # Reconciliation
//
// A run reconciles when every file was read to its end and its lines read equal those
// published, dead-lettered and (organized output) block headers, and the manifest's
// counts, continuations and deleted lists agree. A run that does not is FAILED: the
// export stays unfinished in the state topic and on the server, so the next run of the
// same command reconciles it again without publishing anything twice. Known server
// quirks (bulk.Quirk) fail the run the same way unless the operator accepts them
// (Config.Accept), when they become warnings.
//
// # The EHR
//
// Every request follows producer/ehrhttp's rules: the access token goes only to the
// FHIR base's origin and the trusted ones, never over http under https, never across a
// redirect that leaves the origin; failures are classified permanent or transient once;
// what servers send is bounded and URLs lose their query before they are logged, shown,
// or stored (record headers, checkpoints, audit manifests). See docs/security.md.
//
// When file URLs expire and a fresh manifest does not bring them back (the server
// dropped the export), the fetcher gives the export up in the state topic and kicks off
// a new one in the same run. The new export's lines are each published once; the lines
// the abandoned export had published stay, under its export id, for the dedupe stage.
//
// # Organized output
//
// With organizeOutputBy (Bulk Data v3), output files mix types in resource blocks, each
// led by a header Parameters resource. Each line goes to its own type's raw topic; the
// headers are counted, not published. A block continuing in another file
// (continuesInFile) is published in order: the files of such a chain go to one worker,
// one after the other, and reconciliation checks that each continued file starts with
// the header of the block its predecessor ended with.
//
// Throughput: transactions span many megabytes and all files at once (one commit
// pauses workers only for the flush), the producer lingers and batches, several files
// download in parallel, and each file's download and decompression run a few buffers
// ahead of its parsing and producing; so the cost over a bare idempotent producer is
// HTTP, gzip, one allocation-free scan per line (a JSON object? its resourceType and id;
// see scanResource), keys and headers (built once per file) and the checkpoint commit.
package producer

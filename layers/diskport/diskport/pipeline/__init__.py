"""The import pipeline, one module per step of the state machine, read top to bottom:

`fetch` (inspect the file, create the image record and the snapshot, plan the chunks) → `convert` (one chunk of
the virtual disk into snapshot blocks) → `register` (complete the snapshot, image active, job SUCCESS), and
`failure` (job FAIL, image killed, snapshot and work files removed) when any step fails.

Beside them: `chunk_plan` (how the disk is cut into chunks), `work_files` (what the steps hand each other
through the work bucket), `source_objects` (the source file in S3), `snapshots` (the EBS direct API),
`encryption_keys` (the cmk_id check) and `step_errors` (how errors cross the state machine).
"""

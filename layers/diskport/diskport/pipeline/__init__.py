"""The import pipeline, one module per step of the state machine, read top to bottom:

`fetch` (inspect the file, create the image record and the snapshot, plan the chunks) → `convert` (one chunk of
the virtual disk into snapshot blocks) → `register` (complete the snapshot, image active, job SUCCESS), and
`failure` (job FAIL, image killed, snapshot and work files removed) when any step fails.

Beside them: `chunk_plan` (how the disk is cut into chunks), `rate_control` (how fast a worker writes) and
`step_errors` (how errors cross the state machine). What the steps read and write is in `diskport.stores`:
work files, the source object, snapshots, encryption keys, writer leases, the jobs and images tables.
"""

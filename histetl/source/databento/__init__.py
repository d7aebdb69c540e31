"""The Databento Historical API as a source: plan the chunks of a job, fetch them whole under
a per-job lock, and hand the files to the same replay (`histetl.pipeline.run.run_jobs`)."""

"""Ways jobs come in. Each one validates with poulpe.validate and submits through JobManager."""

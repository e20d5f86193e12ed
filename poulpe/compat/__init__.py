"""Intakes that speak the wire shapes of the systems poulpe replaces (kingtask, easyTask), so their clients and
workers keep working. Each translates its shape into the job JSON and goes through `validate` and
`JobManager.submit` like any other intake; only the answers keep the old shapes."""

module gantry.dev/tests/fault-proxy

go 1.25.0

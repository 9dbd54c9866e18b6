module gantry.dev/tests/token-server

go 1.25.0

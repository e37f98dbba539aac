//! Stratum V1 against a real server (tests/stratum/server.js); see below.

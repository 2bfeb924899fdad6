//! Integration tests of tokenmint-bench: every test starts a real tokenmint server in-process
//! (port 0, a fresh SQLite database in a temp dir), runs the load generator against it and checks
//! its report. No timing assertions.

mod helpers;

mod run;

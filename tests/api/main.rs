//! Integration tests, compiled as one binary. Each test makes its own database in a temp dir.

mod helpers;

mod binary;
mod list;
mod startup;

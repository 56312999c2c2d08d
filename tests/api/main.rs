//! Integration tests, compiled as one binary. Each test makes its own database in a temp dir.

mod helpers;

mod access;
mod binary;
mod cache;
mod changes;
mod docs;
mod firstweek;
mod freshness;
mod hardening;
mod keyless;
mod list;
mod lockout;
mod login;
mod logs;
mod mirror;
mod operations;
mod pg;
mod reset;
mod secrets;
mod sessions;
mod socket;
mod startup;
mod tools;
mod transfer;
mod wire;
mod writes;

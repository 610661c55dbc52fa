mod cli;
mod egress;
mod examples;
mod failures;
mod filtering;
mod interop;
mod live;
mod transport;

mod cli;
mod examples;
mod failures;
mod filtering;
mod interop;
mod live;
mod transport;

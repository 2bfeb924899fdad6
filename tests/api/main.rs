mod create;
mod helpers;
mod process;
mod server;

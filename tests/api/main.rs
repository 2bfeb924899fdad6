mod create;
mod helpers;
mod server;

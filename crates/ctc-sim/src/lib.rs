//! A simulated CTC Connect Wireless gateway.

#![no_std]

// This file exists so watchtower-agent can declare this crate as a build dependency
// (cargo then rebuilds the agent when the eBPF programs change).

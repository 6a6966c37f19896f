//! VAN proxy network coordinator: the control protocol, the coordinator core (a pure state
//! machine with explicit time) and the `pnc` service around it.

//! The Open Inference Protocol (to come).

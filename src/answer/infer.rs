//! Open Inference Protocol answers (to come).

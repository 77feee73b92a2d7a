//! Integration tests for `philo-events`: the vocabulary and the `Log` contract suite.
mod log_contract;
mod vocabulary;

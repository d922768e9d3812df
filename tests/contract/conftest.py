"""Fixtures for the contract suites: a tansu broker shared by the whole session."""

from testkit.tansu import tansu_fixture

tansu_bootstrap = tansu_fixture("session")

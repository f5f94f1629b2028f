"""Faithful fakes of the outside HTTP services, served on 127.0.0.1 inside tests."""

"""A local Daraja: speaks Safaricom's M-Pesa API protocol over HTTP for the embedded default and tests.

An honest double: it imports nothing of ours (models, services, the Daraja client) and reads settings
only through django.conf.settings at call time. See README.md for the test values.
"""

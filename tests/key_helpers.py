"""The secret the suite's signing keys are encrypted with (conftest seeds them per test):
a subprocess server in production mode needs it to open them."""

# Fixed, so a test that sets its own SECRET_KEY still opens the seeded keys.
TEST_KEY_SECRET = "test-key-encryption-secret-long-enough-for-checks"

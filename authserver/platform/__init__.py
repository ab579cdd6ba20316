"""Infrastructure under the use cases: configuration, models and migrations, the Redis
store, security primitives, signing keys, notifications, i18n, events, logs, background
work, errors and the HTTP plumbing every front door shares.
"""

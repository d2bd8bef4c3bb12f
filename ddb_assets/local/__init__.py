"""The local world: moto in server mode with faithful DynamoDB exports, sample data and the demo.

Nothing imports this package but the CLI, local resources and the tests.
"""

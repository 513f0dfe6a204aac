"""Database access: schema (hand-written Alembic migrations), repositories, the batch writer.

Connections are always passed in explicitly; nothing here holds a global connection.
"""

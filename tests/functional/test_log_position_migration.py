"""Migration 0008: kew's byte offsets become log positions, and back."""

import sqlite3


def test_byte_offsets_become_positions_and_back(tmp_path):
    from alembic import command

    from shared.db.migrate import alembic_config, upgrade

    path = tmp_path / "dm.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url, "0007")
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO instances (id, name, project_id, owner, application_id, application_version, "
                       "application_type, outputs, phase, launched, archived, task_id, debug, cost, coins, deleted) "
                       "VALUES (?, 'run', 'project-x', 'alice', 'app', 'v1', 'JOB', '[]', 'RUNNING', "
                       "'2026-11-23 10:00:00', 0, 'task-x', 0, '0', '0', 0)",
                       [("instance-a",), ("instance-b",), ("instance-c",)])
        db.executemany('INSERT INTO instance_logs (instance_id, "offset", lines) VALUES (?, ?, ?)',
                       [("instance-a", 0, 0), ("instance-b", 1234, 5)])
    upgrade(url, "0008")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT instance_id, position, lines FROM instance_logs ORDER BY instance_id").fetchall()
        assert rows == [("instance-a", "", 0), ("instance-b", "1234", 5)]
        db.execute("INSERT INTO instance_logs (instance_id, position, lines) "
                   "VALUES ('instance-c', '2026-11-23T10:55:05.5Z 2', 3)")
    command.downgrade(alembic_config(url), "0007")
    with sqlite3.connect(path) as db:
        rows = db.execute('SELECT instance_id, "offset" FROM instance_logs ORDER BY instance_id').fetchall()
        assert rows == [("instance-a", 0), ("instance-b", 1234), ("instance-c", 0)]

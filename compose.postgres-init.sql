-- Node b's database (node a's is POSTGRES_DB), created on the first start of compose.yaml's PostgreSQL.
CREATE DATABASE configsync_b OWNER configsync;

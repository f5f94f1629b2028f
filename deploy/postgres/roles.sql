-- The campaign's PostgreSQL roles and databases: one role per job, each reaching only what
-- its processes need (xmas_pipeline/adapters/sql/privileges.py has the table). Run it as a
-- superuser with psql. It is idempotent: run it again after an upgrade.
--
--   sudo -u postgres psql -f deploy/postgres/roles.sql
--
-- It holds no password. Set each role's password yourself, either with psql variables
--   sudo -u postgres psql -v intake_pw="$(openssl rand -hex 32)" ... -f roles.sql
-- or afterwards, typed at a prompt:  sudo -u postgres psql -c '\password xmas_intake'
-- Optional variables: store_db (default xmas), dagster_db (default dagster),
-- owner_pw, pipeline_pw, intake_pw, dagster_pw.
--
--   xmas_owner     owns the store database and its tables; only `xmas-pipeline store
--                  migrate` logs in as it
--   xmas_pipeline  the code server and its runs: reads and writes every store table
--   xmas_intake    the public HTTP intake: its few tables only (granted by store migrate)
--   xmas_dagster   Dagster (migrate, webserver, daemon, and the code server's instance):
--                  owns Dagster's database and never reaches the store

\set ON_ERROR_STOP on
\if :{?store_db}
\else
  \set store_db xmas
\endif
\if :{?dagster_db}
\else
  \set dagster_db dagster
\endif

-- The roles: log in, nothing more (no superuser, no CREATEDB, no CREATEROLE, no BYPASSRLS).
SELECT format('CREATE ROLE %I LOGIN', name)
FROM unnest(ARRAY['xmas_owner', 'xmas_pipeline', 'xmas_intake', 'xmas_dagster']) AS name
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name)
\gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', name)
FROM unnest(ARRAY['xmas_owner', 'xmas_pipeline', 'xmas_intake', 'xmas_dagster']) AS name
\gexec

\if :{?owner_pw}
ALTER ROLE xmas_owner PASSWORD :'owner_pw';
\endif
\if :{?pipeline_pw}
ALTER ROLE xmas_pipeline PASSWORD :'pipeline_pw';
\endif
\if :{?intake_pw}
ALTER ROLE xmas_intake PASSWORD :'intake_pw';
\endif
\if :{?dagster_pw}
ALTER ROLE xmas_dagster PASSWORD :'dagster_pw';
\endif

-- The two databases, each with its owner. Nobody else may connect unless granted here.
SELECT format('CREATE DATABASE %I OWNER xmas_owner', :'store_db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'store_db')
\gexec
SELECT format('CREATE DATABASE %I OWNER xmas_dagster', :'dagster_db')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dagster_db')
\gexec
ALTER DATABASE :"store_db" OWNER TO xmas_owner;
ALTER DATABASE :"dagster_db" OWNER TO xmas_dagster;
REVOKE ALL ON DATABASE :"store_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"store_db" TO xmas_pipeline, xmas_intake;
REVOKE ALL ON DATABASE :"store_db" FROM xmas_dagster;
REVOKE ALL ON DATABASE :"dagster_db" FROM xmas_owner, xmas_pipeline, xmas_intake;

-- The store: only its owner creates anything. The other roles may look up names in the
-- schema; `xmas-pipeline store migrate` grants them their tables once they exist.
\connect :"store_db"
ALTER SCHEMA public OWNER TO xmas_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO xmas_pipeline, xmas_intake;

-- Dagster's database: its tables are made by `dagster instance migrate`, as xmas_dagster.
\connect :"dagster_db"
ALTER SCHEMA public OWNER TO xmas_dagster;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

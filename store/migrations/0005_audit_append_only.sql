-- The audit log is append-only: no row is ever changed, and rows leave only by the retention
-- policy, whose DELETE runs in a transaction that says so (SET LOCAL ioc.audit_retention =
-- 'on') and takes only rows older than the configured horizon. The table's owner can still
-- drop these triggers; connecting the services as a role that does not own the table
-- (ops/DEPLOY.md, "Secrets") closes that too.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('ioc.audit_retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- The audit log covers every write, not only camera images: the result, the answer's status
-- and reason, and the folded count become columns (they were keys in `detail`), and the
-- actions written before as `camera.<edit>` on `camera:<target>` get their own names.
ALTER TABLE audit_log
    ADD COLUMN result text     NOT NULL DEFAULT 'allowed'
        CHECK (result IN ('allowed', 'refused', 'failed')),
    ADD COLUMN status smallint,
    ADD COLUMN reason text,
    ADD COLUMN count  integer  NOT NULL DEFAULT 1 CHECK (count >= 1);

UPDATE audit_log
   SET result = CASE WHEN coalesce((detail->>'allowed')::boolean, true) THEN 'allowed' ELSE 'refused' END,
       count  = greatest(coalesce((detail->>'count')::integer, 1), 1);

UPDATE audit_log SET action = 'layout.edit',     target = substr(target, 8) WHERE action = 'camera.layout_edit';
UPDATE audit_log SET action = 'layout.delete',   target = substr(target, 8) WHERE action = 'camera.layout_delete';
UPDATE audit_log SET action = 'wall.focus',      target = substr(target, 8) WHERE action = 'camera.wall_focus';
UPDATE audit_log SET action = 'wall.release',    target = substr(target, 8) WHERE action = 'camera.wall_release';
UPDATE audit_log SET action = 'registry.upsert'                             WHERE action = 'camera.registry_upsert';

-- Who did what, newest first, and one subject's or one target's rows.
CREATE INDEX audit_log_subject ON audit_log (subject, id);
CREATE INDEX audit_log_target ON audit_log (target, id);

# Starting a real Apache for the integration tests (apache.sh, shared_hosting.sh). Sourced after lib.sh.

modules=/usr/lib/apache2/modules

# apache_start USER GROUP CONF: Apache (pid in $apache_pid) as USER:GROUP on a free port ($port) with the modules
# the tests use, its files in $work, and CONF (more modules, the site) appended.
apache_start() {
    port=$(free_port)
    mkdir -p "$work/apache" "$work/htdocs"
    chmod 755 "$work/apache" "$work/htdocs"
    cat >"$work/httpd.conf" <<CONF
ServerRoot "$work/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$work/apache/httpd.pid"
ErrorLog "$work/apache-error.log"
LogLevel warn
User $1
Group $2
LoadModule mpm_event_module $modules/mod_mpm_event.so
LoadModule authz_core_module $modules/mod_authz_core.so
LoadModule authz_host_module $modules/mod_authz_host.so
LoadModule alias_module $modules/mod_alias.so
LoadModule dir_module $modules/mod_dir.so
LoadModule env_module $modules/mod_env.so
LoadModule mime_module $modules/mod_mime.so
LoadModule rewrite_module $modules/mod_rewrite.so
LoadModule cgid_module $modules/mod_cgid.so
TypesConfig /etc/mime.types
ScriptSock "$work/apache/cgid.sock"
$3
CONF
    start apache "$work/apache.log" apache2 -f "$work/httpd.conf" -DFOREGROUND
    apache_pid=$last_pid
    wait_until "Apache on port $port" curl -s -o /dev/null "http://127.0.0.1:$port/" ||
        { cat "$work/apache-error.log" "$work/apache.log" >&2; return 1; }
}

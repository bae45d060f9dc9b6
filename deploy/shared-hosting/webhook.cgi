#!/bin/sh
# webhook.cgi: runs webhook-handler as a CGI program with YOUR settings. Edit the four paths below (USER is your
# account name), upload this file as webhook.cgi (mode 0755) beside .htaccess, and the binary outside the
# document root. Then, from a shell on the host:  ./webhook.cgi check
#
# Why a wrapper and not SetEnv in .htaccess: on hosts that run CGI programs through suEXEC (cPanel, CloudLinux,
# Plesk and most shared hosts) Apache hands the program only the request's own variables; SetEnv lines never
# arrive, so the handler would find no secret and answer every delivery 500. What this file sets always arrives.

# The secret: one line, outside the document root. With suEXEC the CGI runs as you: mode 0600.
# Without suEXEC it runs as the web server's user: mode 0640 and a group you share with it (see README.md).
API_SECRET_KEY_FILE=/home/USER/webhook/secret

# Where verified payloads are kept before the sender gets its 200 (outside the document root, on a local file
# system: ./webhook.cgi check tells). Comment it out to verify only.
WEBHOOK_SPOOL_DIR=/home/USER/webhook/spool

# Without suEXEC, make the payloads readable by that shared group (files 0640, directories 0750).
WEBHOOK_SPOOL_GROUP_READABLE=0

export API_SECRET_KEY_FILE WEBHOOK_SPOOL_DIR WEBHOOK_SPOOL_GROUP_READABLE
exec /home/USER/webhook/webhook-handler "$@"

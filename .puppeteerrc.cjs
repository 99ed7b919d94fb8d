/**
 * qrvisor drives a system Chromium (Debian's `chromium` package, or CHROME_PATH);
 * puppeteer must never download a browser of its own (there is no internet on our machines).
 */
module.exports = { skipDownload: true }

SUMMARY = "Ecko Edge hospital gateway"
DESCRIPTION = "Connects lab analyzers (ASTM over RS-232 or TCP, HL7 v2 over \
               MLLP) and imaging modalities to the central Integration Hub: \
               every message is committed to a SQLite journal before it is \
               acknowledged, then forwarded as FHIR R4 over TLS, with a local \
               admin page."
# The lint's reachability check needs the network, which a build check
# here does not have.
# nooelint: oelint.vars.homepageping
HOMEPAGE = "https://ecko-edge.example"
SECTION = "net"
# Names the product so the CVE check does not match other "gateway"s.
CVE_PRODUCT = "ecko-edge:ecko-gateway"
LICENSE = "Proprietary"
LIC_FILES_CHKSUM = "file://LICENSE;md5=bcb272d31e629eb0d3cdbc76aa6dc3bd"

PV = "0.1.0+git"

# The source is the project's own repository, which also holds this layer,
# so the recipe cannot name the commit it ships: a release build sets
# SRCREV (and ECKO_GIT_URI, to your mirror) in its distro configuration or
# local.conf; see README.md of this layer. Only a development build follows
# the branch.
ECKO_GIT_URI ??= "git://git.ecko-edge.example/ecko-edge.git;protocol=ssh"
ECKO_GIT_BRANCH ??= "main"
SRC_URI = "${ECKO_GIT_URI};branch=${ECKO_GIT_BRANCH};destsuffix=git"
# nooelint: oelint.vars.autorev
SRCREV ??= "${AUTOREV}"

# UNPACKDIR exists from styhead on; on scarthgap the sources unpack into
# WORKDIR.
UNPACKDIR ??= "${WORKDIR}"
S = "${UNPACKDIR}/git"

require ${BPN}-crates.inc

inherit cargo systemd useradd

# The workspace builds several crates; the image needs the gateway binary.
CARGO_SRC_DIR = "gateway"

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --groups dialout \
                       --home-dir ${localstatedir}/lib/ecko --no-create-home \
                       --shell ${base_sbindir}/nologin ecko"

SYSTEMD_SERVICE:${PN} = "ecko-gateway.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    install -d -m 0750 -o root -g ecko ${D}${sysconfdir}/ecko
    install -m 0640 -o root -g ecko ${S}/config/gateway.toml ${D}${sysconfdir}/ecko/gateway.toml

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/packaging/systemd/ecko-gateway.service ${D}${systemd_system_unitdir}/
    # Grants CAP_NET_BIND_SERVICE only when a port below 1024 is configured.
    install -d ${D}${systemd_unitdir}/system-generators
    install -m 0755 ${S}/packaging/systemd/ecko-gateway-generator ${D}${systemd_unitdir}/system-generators/

    install -d ${D}${docdir}/${BPN}
    install -m 0644 ${S}/LICENSE ${S}/THIRD-PARTY-NOTICES ${D}${docdir}/${BPN}/
}

# A configuration changed on the box survives a package upgrade.
CONFFILES:${PN} = "${sysconfdir}/ecko/gateway.toml"

# The notices travel with the binary, not in the -doc package.
FILES:${PN} += "${docdir}/${BPN}/LICENSE ${docdir}/${BPN}/THIRD-PARTY-NOTICES"
FILES:${PN} += "${systemd_unitdir}/system-generators/ecko-gateway-generator"

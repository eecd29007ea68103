# pjsua2 (PyPI pjsua2-python, pjsip 2.15) as a scripted caller for tests: dials a SIP URI, plays a
# WAV into the call, records what it hears, hangs up after a while. Run by tests/support/sip.rs.
#
#   pjsua_call.py DEST WAV_IN WAV_OUT SIP_PORT RTP_PORT SECONDS [--tls CA.pem] [--srtp]
#
# With --tls the call goes over SIP-TLS (TLS 1.2+) and pjsip verifies the server's certificate
# against CA.pem (chain and name: the URI's host must be in the certificate). --srtp makes SDES-SRTP
# mandatory. Prints STATE lines, MEDIA ACTIVE, and the final CODE (the last SIP status) on exit.
import sys
import time

import pjsua2 as pj

args = sys.argv[1:]
dest, wav_in, wav_out = args[0], args[1], args[2]
sip_port, rtp_port, seconds = int(args[3]), int(args[4]), float(args[5])
ca = args[args.index("--tls") + 1] if "--tls" in args else None
srtp = "--srtp" in args

ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.logConfig.level = 4
cfg.logConfig.consoleLevel = 4
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
ep.libInit(cfg)
tc = pj.TransportConfig()
tc.boundAddress = "127.0.0.1"
tc.publicAddress = "127.0.0.1"
tc.port = sip_port
if ca:
    tc.tlsConfig.CaListFile = ca
    tc.tlsConfig.verifyServer = True
    tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
    ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tc)
else:
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
ep.audDevManager().setNullDev()
ep.libStart()

acfg = pj.AccountConfig()
acfg.idUri = "sip:carol@127.0.0.1"
acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
acfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
acfg.mediaConfig.transportConfig.port = rtp_port
acfg.mediaConfig.transportConfig.portRange = 8
if srtp:
    acfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
    acfg.mediaConfig.srtpSecureSignaling = 0


class Call(pj.Call):
    def __init__(self, acc):
        super().__init__(acc)
        self.done = False
        self.code = 0
        self.player = None
        self.rec = None

    def onCallState(self, prm):
        ci = self.getInfo()
        self.code = ci.lastStatusCode
        print("STATE", ci.stateText, ci.lastStatusCode, ci.lastReason, flush=True)
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.done = True

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                am = self.getAudioMedia(i)
                if self.player is None:
                    self.player = pj.AudioMediaPlayer()
                    self.player.createPlayer(wav_in, pj.PJMEDIA_FILE_NO_LOOP)
                    self.player.startTransmit(am)
                    self.rec = pj.AudioMediaRecorder()
                    self.rec.createRecorder(wav_out)
                    am.startTransmit(self.rec)
                si = self.getStreamInfo(i)
                print("MEDIA ACTIVE", si.codecName, si.codecClockRate, flush=True)


acc = pj.Account()
acc.create(acfg)
call = Call(acc)
try:
    call.makeCall(dest, pj.CallOpParam(True))
except pj.Error as e:
    print("MAKECALL FAILED", e.info(), flush=True)
    call.done = True
t0 = time.time()
hung_up = False
while not call.done and time.time() - t0 < seconds + 5:
    ep.libHandleEvents(20)
    if time.time() - t0 > seconds and not hung_up:
        hung_up = True
        try:
            call.hangup(pj.CallOpParam(True))
        except pj.Error:
            pass
code = call.code
call = None
acc = None
ep.libDestroy()
print("CODE", code, flush=True)

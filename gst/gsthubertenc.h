// hubertenc: 16 kHz mono audio in, AniTalker audio features out (HuBERT
// hidden states or MFCC + deltas).  The element is a thin adapter over
// anitalker::hubert and anitalker::mfcc (lib/hubert.h, lib/mfcc.h); see the
// SECTION block in gsthubertenc.cpp.
#pragma once

#include "gstanitalkerelement.h"

G_BEGIN_DECLS

#define GST_TYPE_HUBERT_ENC (gst_hubert_enc_get_type())
G_DECLARE_FINAL_TYPE(GstHubertEnc, gst_hubert_enc, GST, HUBERT_ENC, GstAnitalkerElement)

GST_ELEMENT_REGISTER_DECLARE(hubertenc);

G_END_DECLS

// hubertenc: 16 kHz mono audio in, AniTalker audio features out (HuBERT
// hidden states or MFCC + deltas).  The element is a thin adapter over
// anitalker::hubert and anitalker::mfcc (lib/hubert.h, lib/mfcc.h); see the
// SECTION block in gsthubertenc.cpp.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_HUBERT_ENC (gst_hubert_enc_get_type())
G_DECLARE_FINAL_TYPE(GstHubertEnc, gst_hubert_enc, GST, HUBERT_ENC, GstElement)

// The `mode` property's values.
typedef enum {
  GST_HUBERT_ENC_MODE_OFFLINE = 0,
  GST_HUBERT_ENC_MODE_STREAMING = 1,
  GST_HUBERT_ENC_MODE_AUTO = 2,
} GstHubertEncMode;

#define GST_TYPE_HUBERT_ENC_MODE (gst_hubert_enc_mode_get_type())
GType gst_hubert_enc_mode_get_type(void);

GST_ELEMENT_REGISTER_DECLARE(hubertenc);

G_END_DECLS

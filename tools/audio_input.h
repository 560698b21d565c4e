// Audio for the command-line tool: 16 kHz mono float32, as the reference's
// librosa.load(path, sr=16000) gives it.  A 16 kHz WAV is read directly
// (lib/wav.h); anything else goes through GStreamer (decodebin ! audioconvert
// ! audioresample), whose resampler differs from librosa's.
#pragma once

#include <string>
#include <vector>

// Throws anitalker::Error naming the file, also for a NaN or inf sample.
// `note` is set to a sentence when the audio was converted (rate, channels
// or format), else left empty.
std::vector<float> read_audio_16k_mono(const std::string& path, std::string* note);

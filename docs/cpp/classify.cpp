// Classify an image with a ptcli TorchScript export, outside Python:
//
//   ptcli export-torchscript --recipe classify-image --model efficientnet_lite0 -o lite0.pt
//   ./classify lite0.pt crop.ppm
//
// The image is the model's input crop as a binary PPM (P6), made as ptcli makes it from the
// sidecar's preprocessing (for EfficientNet-Lite0: the short side resized to 256 with bicubic
// interpolation, the centre 224x224 cut out):
//
//   python crop.py lite0.pt cat.jpg crop.ppm
//
// Another resizer's filter moves the scores (ImageMagick's default: the koala at 0.482 against
// ptcli's 0.529). The labels and the normalisation come from the sidecar inside the export
// (ptcli.json, in the archive's extra/ folder).
#include <torch/script.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// The items of the JSON array under "key" in ptcli's sidecar: strings unquoted, numbers as text.
// Enough for the flat arrays the sidecar holds ("classes", "mean", "std"); not a JSON parser.
std::vector<std::string> json_array(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": [");
  if (at == std::string::npos) throw std::runtime_error("the export's sidecar has no " + key);
  std::vector<std::string> items;
  std::string item;
  bool in_string = false, escaped = false, quoted = false;
  for (auto i = json.find('[', at) + 1; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (escaped) { item += c; escaped = false; }
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      else item += c;
    } else if (c == '"') { in_string = quoted = true; }
    else if (c == ',' || c == ']') {
      if (quoted || !item.empty()) items.push_back(item);
      item.clear();
      quoted = false;
      if (c == ']') break;
    } else if (c != ' ' && c != '\n') { item += c; }
  }
  return items;
}

// A binary PPM (P6, 8-bit) as a (3, height, width) float tensor in [0, 1].
torch::Tensor read_ppm(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::string magic;
  int width = 0, height = 0, maximum = 0;
  file >> magic >> width >> height >> maximum;
  if (!file || magic != "P6" || maximum != 255) throw std::runtime_error(path + " is not an 8-bit binary PPM (P6)");
  file.get();  // the single whitespace after the header
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height * 3);
  file.read(reinterpret_cast<char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
  if (!file) throw std::runtime_error(path + " is truncated");
  return torch::from_blob(pixels.data(), {height, width, 3}, torch::kUInt8).permute({2, 0, 1}).to(torch::kFloat32).div(255.0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: classify MODEL.pt IMAGE.ppm\n";
    return 2;
  }
  try {
    torch::jit::ExtraFilesMap extra{{"ptcli.json", ""}};
    torch::jit::Module model = torch::jit::load(argv[1], c10::nullopt, extra);
    model.eval();
    const std::string& sidecar = extra["ptcli.json"];
    const auto labels = json_array(sidecar, "classes");
    const auto mean = json_array(sidecar, "mean"), std_ = json_array(sidecar, "std");
    auto image = read_ppm(argv[2]);
    for (int c = 0; c < 3; ++c) image[c] = (image[c] - std::stod(mean[c])) / std::stod(std_[c]);

    torch::NoGradGuard no_grad;
    const auto probabilities = model.forward({image.unsqueeze(0)}).toTensor().softmax(1)[0];
    const auto top = probabilities.topk(5);
    const auto scores = std::get<0>(top), indices = std::get<1>(top);
    for (int i = 0; i < 5; ++i) {
      const auto index = indices[i].item<int64_t>();
      std::printf("%s\t%lld\t%.6f\n", labels.at(index).c_str(), static_cast<long long>(index), scores[i].item<double>());
    }
  } catch (const std::exception& error) {
    std::cerr << "error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
